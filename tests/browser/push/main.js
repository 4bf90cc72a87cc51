// The page of tests/browser/test_push.py: what a browser app does with the edge proxy, using
// the real OpenFeature web SDK and OFREP web provider. Polling is off: every update the page
// shows after its first answer came through the proxy's event stream (ADR-0008).
import { OpenFeature, ProviderEvents } from "@openfeature/web-sdk";
import { OFREPWebProvider } from "@openfeature/ofrep-web-provider";

const params = new URLSearchParams(location.search);
const flag = params.get("flag");
const state = { ready: false, changes: 0, errors: [] };
window.pushState = state;

const client = OpenFeature.getClient();
const show = () => {
  document.getElementById("value").textContent = String(client.getBooleanValue(flag, false));
};
client.addHandler(ProviderEvents.ConfigurationChanged, () => {
  state.changes += 1;
  show();
});
client.addHandler(ProviderEvents.Error, (event) => state.errors.push(String(event?.message)));

await OpenFeature.setContext({ targetingKey: "browser-user" });
await OpenFeature.setProviderAndWait(
  new OFREPWebProvider({
    baseUrl: params.get("proxy"),
    headers: [["Authorization", `Bearer ${params.get("key")}`]],
    pollInterval: 0, // 0 (the default in 0.4.x): no polling at all
    cacheMode: "disabled", // every load asks the proxy, never localStorage
  }),
);
state.ready = true;
show();
