// The signed-in key: in sessionStorage only (gone with the tab), and only once the API took it.

const KEY = "edge-console.api-key";

export function savedKey() {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null; // storage disabled: the user signs in again on each load
  }
}

export function saveKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}
