// VidLake gallery: the little JavaScript there is. Served from /static only (the page's
// Content-Security-Policy forbids inline script); the pages work without it.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // NSFW sliders show their value as they move.
  document.querySelectorAll("fieldset.nsfw input[type=range]").forEach(function (input) {
    var out = document.querySelector('output[for="' + input.id + '"]');
    if (out) {
      input.addEventListener("input", function () { out.textContent = input.value; });
    }
  });
  // The switch that shows everything greys the sliders out.
  var show = document.getElementById("show_nsfw");
  function syncSliders() {
    document.querySelectorAll("fieldset.nsfw input[type=range]").forEach(function (i) {
      i.disabled = show.checked;
    });
  }
  if (show) { show.addEventListener("change", syncSliders); syncSliders(); }
  // Prompt page: start every model's video at once, side by side.
  var playAll = document.getElementById("play-all");
  if (playAll) {
    playAll.addEventListener("click", function () {
      document.querySelectorAll("section.videos video").forEach(function (v) {
        v.currentTime = 0;
        v.play();
      });
    });
  }
});
