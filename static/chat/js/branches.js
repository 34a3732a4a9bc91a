// The branches a person picked, per conversation, so that a reload shows the
// one they were reading (localStorage: this browser only, like a scroll position).
const BRANCH_KEY = (conversation) => `gptalk:branches:${conversation}`;

export function loadChoices(conversation) {
  try {
    const saved = JSON.parse(localStorage.getItem(BRANCH_KEY(conversation)) || "{}");
    return new Map(Object.entries(saved).filter(([, id]) => Number.isInteger(id)));
  } catch {
    return new Map(); // storage blocked or a damaged entry: show the newest branch
  }
}

export function saveChoices(conversation, choice) {
  try {
    if (choice.size) localStorage.setItem(BRANCH_KEY(conversation), JSON.stringify(Object.fromEntries(choice)));
    else localStorage.removeItem(BRANCH_KEY(conversation));
  } catch {
    // Storage full or blocked: the choice lasts until the page is closed.
  }
}
