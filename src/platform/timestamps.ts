import { timestampDate, timestampFromDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import { invalidField } from './domain-errors.ts';

/** The range protobuf allows for a Timestamp: 0001-01-01 to 9999-12-31 (UTC). */
const minSeconds = -62_135_596_800n;
const maxSeconds = 253_402_300_799n;

/**
 * A time from a request, as a Date; undefined when unset. Out of protobuf's range (which
 * the database would refuse as an error of its own) is InvalidArgument naming `field`.
 */
export function requestTime(timestamp: Timestamp | undefined, field: string): Date | undefined {
  if (!timestamp) return undefined;
  if (timestamp.seconds < minSeconds || timestamp.seconds > maxSeconds || timestamp.nanos < 0 || timestamp.nanos > 999_999_999) {
    throw invalidField(field, 'must be a time between the years 1 and 9999');
  }
  return timestampDate(timestamp);
}

/** A time for a response; unset when there is none. */
export function optionalTimestamp(date: Date | null | undefined): Timestamp | undefined {
  return date ? timestampFromDate(date) : undefined;
}
