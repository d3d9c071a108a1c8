// Drag-and-drop upload: one raw request per file (streamed and encrypted by the server as it
// arrives), a progress bar per file, and the server's French error shown next to the file.
(function () {
  "use strict";
  var zone = document.getElementById("dropzone");
  if (!zone) { return; }
  var input = document.getElementById("file-input");
  var list = document.getElementById("upload-list");
  var sendButton = document.getElementById("send-deposit");
  var maxBytes = parseInt(zone.getAttribute("data-max-bytes"), 10);
  var pending = 0;

  function setBusy(delta) {
    pending += delta;
    if (sendButton) { sendButton.disabled = pending > 0; }
  }

  function row(file) {
    var li = document.createElement("li");
    var label = document.createElement("p");
    label.className = "fr-mb-1v";
    label.textContent = file.name;
    var bar = document.createElement("progress");
    bar.max = 100; bar.value = 0;
    bar.setAttribute("aria-label", "Progression de " + file.name);
    var status = document.createElement("p");
    status.className = "fr-text--sm fr-mb-0";
    li.appendChild(label); li.appendChild(bar); li.appendChild(status);
    list.appendChild(li);
    return { li: li, bar: bar, status: status };
  }

  function fail(ui, message) {
    ui.li.classList.add("portal-upload--error");
    ui.status.textContent = message;
    ui.bar.value = 0;
  }

  function upload(file) {
    var ui = row(file);
    if (file.size === 0) { fail(ui, "Fichier vide : il n'a pas été envoyé."); return; }
    if (file.size > maxBytes) { fail(ui, "Fichier trop volumineux : il n'a pas été envoyé."); return; }
    setBusy(1);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", zone.getAttribute("data-upload-url"));
    xhr.setRequestHeader("X-CSRFToken", zone.getAttribute("data-csrf"));
    xhr.setRequestHeader("X-Filename", encodeURIComponent(file.name));
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        ui.bar.value = Math.round(100 * e.loaded / e.total);
        ui.status.textContent = ui.bar.value + " %";
      }
    });
    xhr.addEventListener("load", function () {
      setBusy(-1);
      if (xhr.status === 201) {
        ui.bar.value = 100;
        ui.status.textContent = "Envoyé et chiffré.";
        ui.li.setAttribute("data-uploaded", "true");
        return;
      }
      var message = "Échec de l'envoi.";
      try { message = JSON.parse(xhr.responseText).error || message; } catch (err) { /* keep default */ }
      fail(ui, message);
    });
    xhr.addEventListener("error", function () {
      setBusy(-1);
      fail(ui, "Connexion interrompue : le fichier n'a pas été enregistré. Réessayez.");
    });
    xhr.send(file);
  }

  function handle(files) {
    for (var i = 0; i < files.length; i++) { upload(files[i]); }
  }

  input.addEventListener("change", function () { handle(input.files); input.value = ""; });
  zone.addEventListener("dragover", function (e) { e.preventDefault(); zone.classList.add("portal-dropzone--over"); });
  zone.addEventListener("dragleave", function () { zone.classList.remove("portal-dropzone--over"); });
  zone.addEventListener("drop", function (e) {
    e.preventDefault();
    zone.classList.remove("portal-dropzone--over");
    handle(e.dataTransfer.files);
  });
})();
