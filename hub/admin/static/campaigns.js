/* Campaigns: the form offers the templates of the chosen channel and the promo code's fields only when
   a code is wanted. The form works without this file: the server checks every choice again. */
(function () {
  "use strict";

  function campaignForm() {
    var form = document.getElementById("campaign-form");
    if (!form) return;
    var channel = document.getElementById("channel");
    var template = document.getElementById("template");
    var promo = document.getElementById("promo");
    var promoFields = form.querySelector(".promo-fields");

    function fits(option) {
      var kind = option.getAttribute("data-channel");
      if (!kind || !channel.value) return true;
      return channel.value === "email" ? kind === "email" : kind !== "email";
    }

    function filterTemplates() {
      if (!channel || !template) return;
      Array.prototype.forEach.call(template.options, function (option) {
        var show = fits(option);
        option.hidden = !show;
        option.disabled = !show;
      });
      var chosen = template.options[template.selectedIndex];
      if (chosen && chosen.disabled) template.value = "";
    }

    function showPromo() {
      if (promo && promoFields) promoFields.hidden = !promo.checked;
    }

    if (channel) channel.addEventListener("change", filterTemplates);
    if (promo) promo.addEventListener("change", showPromo);
    filterTemplates();
    showPromo();
  }

  document.addEventListener("DOMContentLoaded", campaignForm);
})();
