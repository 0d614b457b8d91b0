// Progressive enhancement only: every page works without this file.
// * The subscription form shows the fieldset of the chosen destination type only.
// * A "select all" box for the deliveries table.
(function () {
  "use strict";
  var type = document.getElementById("destination_type");
  if (type) {
    var show = function () {
      document.querySelectorAll("fieldset[data-destination]").forEach(function (set) {
        set.hidden = set.getAttribute("data-destination") !== type.value;
      });
    };
    type.addEventListener("change", show);
    show();
  }
  var all = document.getElementById("pick-all");
  if (all) {
    all.hidden = false;
    all.querySelector("input").addEventListener("change", function (event) {
      document.querySelectorAll('input[name="ids"]').forEach(function (box) {
        box.checked = event.target.checked;
      });
    });
  }
})();
