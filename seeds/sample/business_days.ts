// Business-day arithmetic for invoices and delivery estimates.

/** ISO dates (YYYY-MM-DD) that are public holidays, supplied by the caller. */
export type HolidaySet = Set<string>;

/** True for Saturday and Sunday. */
export function isWeekend(day: Date): boolean {
  const weekday = day.getUTCDay();
  return weekday === 0 || weekday === 6;
}

function isoDate(day: Date): string {
  return day.toISOString().slice(0, 10);
}

/** True if the day is neither a weekend nor a holiday. */
export function isBusinessDay(day: Date, holidays: HolidaySet = new Set()): boolean {
  return !isWeekend(day) && !holidays.has(isoDate(day));
}

/**
 * The date that is `days` business days after `start` (start itself is not counted).
 * Negative values count backwards.
 */
export function addBusinessDays(start: Date, days: number, holidays: HolidaySet = new Set()): Date {
  const step = days >= 0 ? 1 : -1;
  let remaining = Math.abs(days);
  const current = new Date(start.getTime());
  while (remaining > 0) {
    current.setUTCDate(current.getUTCDate() + step);
    if (isBusinessDay(current, holidays)) remaining--;
  }
  return current;
}

/** Number of business days from `start` (exclusive) to `end` (inclusive). */
export function businessDaysBetween(start: Date, end: Date, holidays: HolidaySet = new Set()): number {
  let total = 0;
  const current = new Date(start.getTime());
  while (current < end) {
    current.setUTCDate(current.getUTCDate() + 1);
    if (isBusinessDay(current, holidays)) total++;
  }
  return total;
}

/** Invoice due date: `termDays` business days after the issue date, e.g. 30 for "net 30". */
export function invoiceDueDate(issued: Date, termDays = 30, holidays: HolidaySet = new Set()): Date {
  return addBusinessDays(issued, termDays, holidays);
}
