const TOKEN_KEY = "billing-gateway.token";

export function storedToken(): string | null {
  return window.sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(token: string | null): void {
  if (token) window.sessionStorage.setItem(TOKEN_KEY, token);
  else window.sessionStorage.removeItem(TOKEN_KEY);
}

// Development sign-in: the gateway mints a token for a typed user name (never in production,
// where the product's own sign-in provides the token).
export async function devToken(user: string, admin: boolean): Promise<string> {
  const response = await fetch(new URL("dev-token", window.location.href.split("#")[0]), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user, admin }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : response.statusText;
    throw new Error(
      response.status === 404 ? "Sign-in by user name is available in development only." : detail,
    );
  }
  return body.token as string;
}

// An invoice PDF needs the bearer token, so it is fetched and handed to the browser as a file.
export async function downloadPdf(url: string, token: string, filename: string): Promise<void> {
  const response = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  if (!response.ok) throw new Error(`The PDF could not be downloaded (HTTP ${response.status}).`);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

// A fresh idempotency key for one mutation (hex of 16 random bytes; not crypto.randomUUID,
// which plain-http origins other than localhost lack).
export function idempotencyKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}
