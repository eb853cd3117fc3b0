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

// The server form: show what the chosen authentication needs (the CSS reads data-auth, which the
// page sets for the saved choice), and clear a typed password when Gmail OAuth is picked.
const form = document.getElementById("server-form");
if (form) {
  form.addEventListener("change", (event) => {
    if (event.target.name !== "auth") return;
    form.dataset.auth = event.target.value;
    if (event.target.value === "gmail") form.elements.password.value = "";
  });
}
