import { createHash } from 'node:crypto';
import { END_OF_TIME_US, formatInstantUs } from './time.ts';

/**
 * SCD type 2 on customer_segment (docs/contract.md §3), as a pure walk over one
 * customer's change history in commit order: by (seq, lsn), the key staging
 * uses too (src/consumer/envelope.ts, RowChange.seq). The same rules are written as
 * set-based SQL in consumers/warehouse/batch-recompute.ts; tests hold
 * the two to the same rows.
 *
 * Rules:
 * - consecutive non-delete changes with the same updated_at are one change
 *   (one source transaction); the last of them wins;
 * - no open version: the change opens one at its updated_at;
 * - segment differs from the open version: close it at the change's
 *   updated_at, open a new one at the same instant;
 * - otherwise the change overwrites the open version's attributes;
 * - a delete closes the open version at the delete's commit time.
 */
export interface CustomerChange {
  /** Commit-order rank (`source.sequence[0]`), compared before `lsn`. */
  seq: bigint;
  lsn: bigint;
  op: 'c' | 'u' | 'd' | 'r';
  updatedUs: bigint | null;
  committedUs: bigint;
  segment: string | null;
  email: string | null;
  fullName: string | null;
}

export interface CustomerVersion {
  customerKey: string;
  customerId: string;
  email: string | null;
  fullName: string | null;
  segment: string | null;
  effectiveUs: bigint;
  expirationUs: bigint;
  isCurrent: boolean;
}

export function customerKey(customerId: string, effectiveUs: bigint): string {
  return createHash('md5').update(`${customerId}-${formatInstantUs(effectiveUs)}`).digest('hex');
}

/** Collapses runs of same-updated_at upserts (one transaction) to their last member. */
export function collapseRuns(changes: readonly CustomerChange[]): CustomerChange[] {
  const sorted = [...changes].sort((a, b) => (a.seq !== b.seq ? (a.seq < b.seq ? -1 : 1) : a.lsn < b.lsn ? -1 : a.lsn > b.lsn ? 1 : 0));
  const out: CustomerChange[] = [];
  for (const ch of sorted) {
    const prev = out[out.length - 1];
    if (prev && prev.op !== 'd' && ch.op !== 'd' && prev.updatedUs === ch.updatedUs) {
      out[out.length - 1] = ch;
    } else {
      out.push(ch);
    }
  }
  return out;
}

export function scd2Versions(customerId: string, changes: readonly CustomerChange[]): CustomerVersion[] {
  const versions: CustomerVersion[] = [];
  let open: Omit<CustomerVersion, 'customerKey' | 'expirationUs' | 'isCurrent'> | null = null;
  const close = (atUs: bigint) => {
    if (!open) return;
    versions.push({ ...open, customerKey: customerKey(customerId, open.effectiveUs), expirationUs: atUs, isCurrent: false });
    open = null;
  };
  for (const ch of collapseRuns(changes)) {
    if (ch.op === 'd') {
      close(ch.committedUs);
      continue;
    }
    // Validation guarantees updated_at on upserts; a history row without it cannot be placed in time.
    if (ch.updatedUs === null) continue;
    if (open && open.segment !== ch.segment) close(ch.updatedUs);
    if (!open) {
      open = { customerId, email: ch.email, fullName: ch.fullName, segment: ch.segment, effectiveUs: ch.updatedUs };
    } else {
      open.email = ch.email;
      open.fullName = ch.fullName;
    }
  }
  if (open) {
    const o = open as Omit<CustomerVersion, 'customerKey' | 'expirationUs' | 'isCurrent'>;
    versions.push({ ...o, customerKey: customerKey(customerId, o.effectiveUs), expirationUs: END_OF_TIME_US, isCurrent: true });
  }
  return versions;
}
