/* The billing-gateway sandbox's stand-in for the part of Stripe.js a billing page calls:
 *   const stripe = Stripe(publishableKey);
 *   const card = stripe.elements().create("card"); card.mount(element);
 *   await stripe.createPaymentMethod({ type: "card", card });   // { paymentMethod } | { error }
 *   await stripe.confirmCardPayment(clientSecret);               // { paymentIntent } | { error }
 * The card element is a picker of Stripe's test cards (no card number is ever typed), and a
 * 3-D Secure challenge is the sandbox's authentication page, answered Complete or Fail. */
(function () {
  "use strict";
  var script = document.currentScript;
  var SANDBOX = script ? new URL(script.src).origin : "";
  var TEST_CARDS = [
    { token: "pm_card_visa", label: "Visa •••• 4242 (succeeds)" },
    { token: "pm_card_chargeDeclined", label: "Visa •••• 0002 (declined)" },
    { token: "pm_card_authenticationRequired", label: "Visa •••• 3184 (3-D Secure)" },
  ];

  function CardElement() {
    this.token = TEST_CARDS[0].token;
    this.node = null;
    this.handlers = {};
  }
  CardElement.prototype.mount = function (target) {
    var host = typeof target === "string" ? document.querySelector(target) : target;
    var select = document.createElement("select");
    select.setAttribute("aria-label", "Test card");
    TEST_CARDS.forEach(function (card) {
      var option = document.createElement("option");
      option.value = card.token;
      option.textContent = card.label;
      select.appendChild(option);
    });
    var element = this;
    select.addEventListener("change", function () {
      element.token = select.value;
      (element.handlers.change || []).forEach(function (handler) {
        handler({ complete: true, empty: false, error: undefined });
      });
    });
    host.appendChild(select);
    this.node = select;
    (this.handlers.ready || []).forEach(function (handler) { handler({}); });
  };
  CardElement.prototype.on = function (name, handler) {
    (this.handlers[name] = this.handlers[name] || []).push(handler);
    return this;
  };
  CardElement.prototype.destroy = function () {
    if (this.node) this.node.remove();
    this.node = null;
  };
  CardElement.prototype.unmount = CardElement.prototype.destroy;

  function challenge(intentId) {
    return new Promise(function (resolve) {
      var overlay = document.createElement("div");
      overlay.setAttribute("role", "dialog");
      overlay.setAttribute("aria-label", "3-D Secure authentication");
      overlay.style.cssText =
        "position:fixed;inset:0;background:rgba(0,0,0,.45);display:flex;" +
        "align-items:center;justify-content:center;z-index:2147483647;font:16px sans-serif";
      var box = document.createElement("div");
      box.style.cssText = "background:#fff;padding:24px;border-radius:8px;max-width:360px";
      box.innerHTML =
        "<h2 style='margin-top:0'>3D Secure 2 Test Page</h2>" +
        "<p>The sandbox's bank asks the customer to confirm this payment.</p>";
      [["Complete", "succeed"], ["Fail", "fail"]].forEach(function (choice) {
        var button = document.createElement("button");
        button.type = "button";
        button.textContent = choice[0];
        button.style.marginRight = "8px";
        button.addEventListener("click", function () {
          overlay.remove();
          resolve(choice[1]);
        });
        box.appendChild(button);
      });
      overlay.appendChild(box);
      document.body.appendChild(overlay);
    }).then(function (outcome) {
      return fetch(SANDBOX + "/_sandbox/payment_intents/" + intentId + "/authenticate", {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: "outcome=" + outcome,
      }).then(function (response) { return response.json(); });
    });
  }

  function settled(intent) {
    if (intent.error) return { error: intent.error };
    if (["succeeded", "processing", "requires_capture"].indexOf(intent.status) >= 0) {
      return { paymentIntent: { id: intent.id, status: intent.status } };
    }
    var error = intent.last_payment_error || {};
    return {
      error: {
        type: error.type || "card_error",
        code: error.code || "payment_intent_authentication_failure",
        message: error.message || "The payment was not authenticated.",
        payment_intent: { id: intent.id, status: intent.status },
      },
    };
  }

  window.Stripe = function (publishableKey) {
    if (!/^pk_test_/.test(publishableKey || "")) {
      throw new Error("The sandbox's Stripe.js takes a test publishable key (pk_test_...).");
    }
    return {
      elements: function () {
        return { create: function () { return new CardElement(); } };
      },
      createPaymentMethod: function (options) {
        var card = options && options.card;
        if (!(card instanceof CardElement)) {
          return Promise.resolve({
            error: { type: "validation_error", message: "Pass the card element as `card`." },
          });
        }
        return Promise.resolve({ paymentMethod: { id: card.token, type: "card" } });
      },
      confirmCardPayment: function (clientSecret) {
        var intentId = String(clientSecret || "").split("_secret_")[0];
        if (!/^pi_/.test(intentId)) {
          return Promise.resolve({
            error: { type: "validation_error", message: "Not a PaymentIntent client secret." },
          });
        }
        return challenge(intentId).then(settled);
      },
    };
  };
})();
