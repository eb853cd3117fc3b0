// Small conveniences on top of pages that work without JavaScript.
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(() => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });
});

// The server form: show what the chosen authentication needs, and fill Gmail's defaults when
// Gmail OAuth is picked (smtp.gmail.com, 587, STARTTLS), as Flectra does.
const form = document.getElementById("server-form");
if (form) {
  const sync = (fillDefaults) => {
    const auth = form.querySelector("input[name=auth]:checked");
    form.dataset.auth = auth ? auth.value : "";
    if (fillDefaults && auth && auth.value === "gmail") {
      form.elements.host.value = form.dataset.gmailHost;
      form.elements.port.value = form.dataset.gmailPort;
      form.elements.security.value = form.dataset.gmailPort === "465" ? "tls" : "starttls";
      form.elements.password.value = "";
    }
  };
  form.addEventListener("change", (event) => { if (event.target.name === "auth") sync(true); });
  sync(false);
}
