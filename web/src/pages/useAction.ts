import { useState } from "react";

type Payload = { userErrors: { message: string }[] };

// A mutation run from a button: busy while it runs, then its user errors or a notice.
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);

  const run = async <P extends Payload>(
    action: () => Promise<P | null | undefined>,
    done: string | ((payload: P) => string),
  ) => {
    setBusy(true);
    setFailure(null);
    setNotice(null);
    try {
      const payload = await action();
      if (!payload) throw new Error("No answer from the billing API.");
      if (payload.userErrors.length) setFailure(payload.userErrors.map((e) => e.message).join(" "));
      else setNotice(typeof done === "string" ? done : done(payload));
    } catch (problem) {
      setFailure((problem as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return { busy, failure, notice, run };
}
