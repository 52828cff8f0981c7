import { useState, type FormEvent } from "react";
import { devToken } from "../session";
import { Failure } from "./Status";

export function SignIn({ onSignedIn }: { onSignedIn: (token: string) => void }) {
  const [user, setUser] = useState("");
  const [admin, setAdmin] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onSignedIn(await devToken(user.trim(), admin));
    } catch (failure) {
      setError((failure as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form onSubmit={submit} aria-label="Sign in">
      <h2>Sign in</h2>
      <label>
        User name <input value={user} onChange={(e) => setUser(e.target.value)} required />
      </label>
      <label>
        <input type="checkbox" checked={admin} onChange={(e) => setAdmin(e.target.checked)} />
        Billing admin
      </label>
      <button type="submit" disabled={busy}>
        {busy ? "Signing in…" : "Sign in"}
      </button>
      <Failure error={error} />
    </form>
  );
}
