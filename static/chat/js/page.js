// Loaded by every page: the theme toggle and the language switch.

const THEMES = ["system", "light", "dark"];
const root = document.documentElement;

function currentTheme() {
  return root.dataset.theme || "system";
}

function applyTheme(theme) {
  if (theme === "system") delete root.dataset.theme;
  else root.dataset.theme = theme;
  // A cookie, so that the server renders the next page in the same theme (no flash).
  const maxAge = theme === "system" ? 0 : 60 * 60 * 24 * 365;
  document.cookie = `theme=${theme}; path=/; max-age=${maxAge}; samesite=lax`;
  for (const button of document.querySelectorAll("[data-theme-toggle]")) labelToggle(button);
}

function labelToggle(button) {
  const theme = currentTheme();
  const label = button.dataset[`label${theme[0].toUpperCase()}${theme.slice(1)}`];
  button.setAttribute("aria-label", label);
  button.title = label;
  button.dataset.current = theme;
}

for (const button of document.querySelectorAll("[data-theme-toggle]")) {
  labelToggle(button);
  button.addEventListener("click", () => {
    applyTheme(THEMES[(THEMES.indexOf(currentTheme()) + 1) % THEMES.length]);
  });
}

for (const select of document.querySelectorAll("select[data-autosubmit]")) {
  select.addEventListener("change", () => select.form.requestSubmit());
}

// Come back to the page as it is now: the chat page changes its address without
// reloading (a chat opened or created since), so the `next` rendered with the page is stale.
for (const form of document.querySelectorAll(".lang-form")) {
  form.addEventListener("submit", () => {
    const next = form.querySelector('input[name="next"]');
    if (next) next.value = location.pathname + location.search + location.hash;
  });
}
