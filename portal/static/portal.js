// Move keyboard focus to an error summary so screen-reader users hear it first (RGAA 11.10).
document.addEventListener("DOMContentLoaded", function () {
  var target = document.querySelector("[data-autofocus]");
  if (target) { target.focus(); }
});
