// The part of Stripe.js the app calls; the sandbox serves a stand-in with the same shape, so
// one code path runs against Stripe and offline.
export interface CardElement {
  mount(target: HTMLElement): void;
  destroy(): void;
}

interface StripeError {
  message?: string;
  code?: string;
}

export interface StripeJs {
  elements(): { create(type: "card"): CardElement };
  createPaymentMethod(options: {
    type: "card";
    card: CardElement;
  }): Promise<{ paymentMethod?: { id: string }; error?: StripeError }>;
  confirmCardPayment(
    clientSecret: string,
  ): Promise<{ paymentIntent?: { id: string; status: string }; error?: StripeError }>;
}

declare global {
  interface Window {
    Stripe?: (publishableKey: string) => StripeJs;
  }
}

const loading = new Map<string, Promise<void>>();

export function loadStripe(url: string, publishableKey: string): Promise<StripeJs> {
  if (!loading.has(url)) {
    loading.set(
      url,
      new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = url;
        script.onload = () => resolve();
        script.onerror = () => {
          loading.delete(url);
          reject(new Error("Stripe.js could not be loaded."));
        };
        document.head.appendChild(script);
      }),
    );
  }
  return loading.get(url)!.then(() => {
    if (!window.Stripe) throw new Error("Stripe.js did not start.");
    return window.Stripe(publishableKey);
  });
}
