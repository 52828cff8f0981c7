export function Loading({ what }: { what: string }) {
  return <p role="status">Loading {what}…</p>;
}

export function Failure({ error }: { error: { message: string } | string | null | undefined }) {
  if (!error) return null;
  return <p role="alert">{typeof error === "string" ? error : error.message}</p>;
}

export function Notice({ message }: { message: string | null }) {
  return message ? <p role="status">{message}</p> : null;
}
