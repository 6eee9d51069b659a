// The API explorer: Swagger UI (from swagger-ui-bundle, served by this server) over
// openapi.json. The secret typed in the bar stays in this module; every request the page sends
// to this server gets a fresh token for the path it calls, so "Try it out" just works.

import { sign } from "./signer.js";

const HEADER = "x-channelstream-secret";
let secret = "";

const input = document.getElementById("secret");
const status = document.getElementById("secret-status");

function useSecret() {
  secret = input.value;
  status.textContent = secret
    ? "Secret set: calls are signed in this page."
    : "No secret: server API calls will get 403.";
  status.classList.toggle("ready", Boolean(secret));
}

input.addEventListener("input", useSecret);
document.getElementById("secret-form").addEventListener("submit", (event) => {
  event.preventDefault();
  useSecret();
});

async function signRequest(request) {
  for (const name of Object.keys(request.headers || {})) {
    if (name.toLowerCase() === HEADER) delete request.headers[name]; // never the raw secret
  }
  const url = new URL(request.url, window.location.href);
  if (secret && url.origin === window.location.origin) {
    request.headers = request.headers || {};
    request.headers[HEADER] = await sign(secret, url.pathname);
  }
  return request;
}

window.channelstreamExplorer = { sign, signRequest };

window.ui = window.SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  presets: [window.SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true,
  validatorUrl: null,
  persistAuthorization: false,
  requestInterceptor: signRequest,
});
