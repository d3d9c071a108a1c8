// A fiche's attachment (a PDF) goes as the raw request body (the portal refuses multipart file
// parts: nothing is ever spooled in clear to a temporary file), then the page reloads.
(function () {
  "use strict";
  var forms = document.querySelectorAll("form.fiche-piece");
  Array.prototype.forEach.call(forms, function (form) {
    var error = document.getElementById(form.id + "-erreur");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var input = form.querySelector("input[type=file]");
      if (!input.files.length) { return; }
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("data-url"));
      xhr.setRequestHeader("X-CSRFToken", form.getAttribute("data-csrf"));
      xhr.setRequestHeader("Content-Type", "application/pdf");
      xhr.onload = function () {
        if (xhr.status === 201) { window.location.reload(); return; }
        var message = "L'envoi a échoué : réessayez.";
        try { message = JSON.parse(xhr.responseText).error || message; } catch (e) { /* keep */ }
        error.textContent = message;
        error.hidden = false;
      };
      xhr.send(input.files[0]);
    });
  });
}());
