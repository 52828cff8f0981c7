import type { MoneyFieldsFragment } from "./gql/graphql";

// The customer's locale formats money and dates; amounts arrive as minor units with their
// decimal form, which Intl formats without floating-point rounding surprises at display scale.
export const locale = navigator.language || "en-US";

export function money(value: MoneyFieldsFragment): string {
  return new Intl.NumberFormat(locale, { style: "currency", currency: value.currency }).format(
    Number(value.decimal),
  );
}

export function date(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleDateString(locale, { dateStyle: "medium" }) : "—";
}

export function dateTime(iso: string): string {
  return new Date(iso).toLocaleString(locale, { dateStyle: "medium", timeStyle: "medium" });
}

export function percent(share: number): string {
  return new Intl.NumberFormat(locale, { style: "percent", maximumFractionDigits: 1 }).format(share);
}

export function count(value: string | number): string {
  return new Intl.NumberFormat(locale).format(BigInt(value));
}
