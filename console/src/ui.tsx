import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { ApiError } from './api';
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
