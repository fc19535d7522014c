import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { ApiError, isMissingRoute } from './api';
import { ago, isNegative, money, utc } from './format';

export interface Loaded<T> {
  data?: T;
  error?: ApiError;
  loading: boolean;
  reload: () => void;
}

/** Runs `load` when `deps` change (and on reload()); keeps the last data while reloading. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: ApiError; loading: boolean }>({ loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ data: s.data, loading: true }));
    load().then(
      (data) => live && setState({ data, loading: false }),
      (error: unknown) => live && setState({ error: asApiError(error), loading: false }),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

export function asApiError(error: unknown): ApiError {
  return error instanceof ApiError ? error : new ApiError(0, 'internal_error', String((error as Error)?.message ?? error));
}

/** The API's own words for what went wrong: its data.message, and the status word. */
export function ErrorNote({ error }: { error?: ApiError }) {
  if (!error) return null;
  return (
    <p class="error" role="alert">
      {error.message} <code>{error.status}</code>
    </p>
  );
}

export function Money({ value, signed }: { value: string; signed?: boolean }) {
  const positive = signed && !isNegative(value) && /[1-9]/.test(value);
  return <span class={`money${isNegative(value) ? ' negative' : ''}`}>{`${positive ? '+' : ''}${money(value)}`}</span>;
}

export function Time({ iso }: { iso: string | null }) {
  if (!iso) return <span class="muted">—</span>;
  return (
    <time dateTime={iso} title={utc(iso)}>
      {ago(iso)}
      <small>{utc(iso)}</small>
    </time>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="empty">{children}</p>;
}

export function Loading({ when }: { when: boolean }) {
  return when ? <p class="muted">Loading…</p> : null;
}

/** A route this server does not have (yet): said politely, instead of an error. */
export function Unavailable({ what }: { what: string }) {
  return (
    <p class="empty" data-unavailable>
      {what} {what.endsWith('s') ? 'are' : 'is'} not available on this server: its version does not have these routes yet.
    </p>
  );
}

/**
 * A secret the API shows once (a new API key, a webhook's signing secret): displayed with a copy
 * button and a warning, until the operator dismisses it. It is never stored by the console.
 */
export function SecretOnce({ label, secret, onDone }: { label: string; secret: string; onDone: () => void }) {
  const [copied, setCopied] = useState<'yes' | 'no'>();
  const copy = () =>
    navigator.clipboard.writeText(secret).then(
      () => setCopied('yes'),
      () => setCopied('no'),
    );
  return (
    <div class="secret" role="status" data-secret>
      <p>
        <strong>{label}</strong> Copy it now: it is shown only this once and cannot be read again.
      </p>
      <p class="secret-value">
        <code data-secret-value>{secret}</code>
        <button type="button" onClick={() => void copy()}>
          Copy
        </button>
        {copied === 'yes' && <span class="notice">Copied.</span>}
        {copied === 'no' && <span class="muted">The browser refused the clipboard: select the text and copy it.</span>}
      </p>
      <button type="button" class="secondary" onClick={onDone}>
        I have stored it
      </button>
    </div>
  );
}

/** A 6-decimal money string, as the API writes them (`"12.500000"`, `"-3.000000"`). */
const MONEY_TEXT = /^-?\d+\.\d{6}$/;

/** An audit row's `changes` (or an event's `data`), as a readable list: money grouped, times relative. */
export function Fields({ value }: { value: Record<string, unknown> }) {
  if (isBeforeAfter(value)) return <Changed before={value.before} after={value.after} />;
  const entries = Object.entries(value);
  if (entries.length === 0) return <span class="muted">—</span>;
  return (
    <dl class="fields">
      {entries.map(([name, v]) => (
        <div key={name}>
          <dt>{name.replace(/_/g, ' ')}</dt>
          <dd>
            <FieldValue value={v} />
          </dd>
        </div>
      ))}
    </dl>
  );
}

function FieldValue({ value }: { value: unknown }) {
  if (value === null || value === undefined) return <span class="muted">none</span>;
  if (typeof value === 'string') {
    if (MONEY_TEXT.test(value)) return <Money value={value} />;
    if (/^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(value) && !Number.isNaN(Date.parse(value))) return <Time iso={value} />;
    return <span>{value}</span>;
  }
  if (typeof value === 'number' || typeof value === 'boolean') return <span>{String(value)}</span>;
  if (Array.isArray(value)) {
    if (value.length === 0) return <span class="muted">[]</span>;
    if (value.every((v) => typeof v !== 'object' || v === null)) return <span>{value.map(String).join(', ')}</span>;
  }
  if (typeof value === 'object' && !Array.isArray(value) && isFromTo(value)) {
    return (
      <span>
        <FieldValue value={value.from} /> → <FieldValue value={value.to} />
      </span>
    );
  }
  if (typeof value === 'object' && !Array.isArray(value)) return <Fields value={value as Record<string, unknown>} />;
  return <code>{JSON.stringify(value)}</code>;
}

type Record_ = Record<string, unknown>;
const isRecord = (v: unknown): v is Record_ => typeof v === 'object' && v !== null && !Array.isArray(v);
const isBeforeAfter = (v: Record_): v is { before: Record_; after: Record_ } =>
  Object.keys(v).length === 2 && isRecord(v.before) && isRecord(v.after);

/** `{ before, after }` (an update): only the fields that changed, each as old → new. */
function Changed({ before, after }: { before: Record_; after: Record_ }) {
  const names = [...new Set([...Object.keys(before), ...Object.keys(after)])].filter(
    (name) => JSON.stringify(before[name]) !== JSON.stringify(after[name]),
  );
  if (names.length === 0) return <span class="muted">nothing changed</span>;
  return (
    <dl class="fields">
      {names.map((name) => (
        <div key={name}>
          <dt>{name.replace(/_/g, ' ')}</dt>
          <dd>
            <FieldValue value={before[name]} /> → <FieldValue value={after[name]} />
          </dd>
        </div>
      ))}
    </dl>
  );
}

const isFromTo = (v: object): v is { from: unknown; to: unknown } => Object.keys(v).length === 2 && 'from' in v && 'to' in v;

/** A load's error: "not available on this server" for a missing route, the API's message otherwise. */
export function LoadError({ error, what }: { error?: ApiError; what: string }) {
  if (!error) return null;
  return isMissingRoute(error) ? <Unavailable what={what} /> : <ErrorNote error={error} />;
}

/** What an action did: a notice, or the API's message when it was refused. */
export interface Outcome {
  ok: boolean;
  text: string;
  error?: ApiError;
}

export function OutcomeNote({ outcome }: { outcome?: Outcome }) {
  if (!outcome) return null;
  return (
    <p class={outcome.ok ? 'notice' : 'error'} role={outcome.ok ? 'status' : 'alert'} data-outcome>
      {outcome.text} {outcome.error && `${outcome.error.message} (${outcome.error.status})`}
    </p>
  );
}
