import { useState } from 'preact/hooks';
import { api, ApiError, enc, type Grant, type GrantChange, isMissingRoute, type Page, type Wallet } from '../api';
import { isZero, money } from '../format';
import { asApiError, Empty, ErrorNote, Loading, Money, type Outcome, OutcomeNote, Time, Unavailable, useLoad } from '../ui';

/** An idempotency key for one grant form submission (works without a secure context, unlike randomUUID). */
function newIdempotencyKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `console-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

/** How a grant came (`origin`), in words; an origin this build does not know shows as the API spells it. */
const ORIGINS: Record<string, string> = {
  grant: 'grant',
  initial: 'initial credits',
  top_up: 'top-up',
  adjustment: 'adjustment',
  refund: 'refund',
  upgrade: 'balance before grants',
};

/** A wallet's grants (API.md §8) in drawing order, with Grant and Void; said politely when the server has no grants. */
export function WalletGrants({ userId, wallet, onChange }: { userId: string; wallet?: Wallet; onChange: () => void }) {
  const grants = useLoad(() => api<Page<Grant>>('GET', `/api/wallets/${enc(userId)}/grants?limit=100`), [userId]);
  const [outcome, setOutcome] = useState<Outcome>();
  if (isMissingRoute(grants.error)) {
    return (
      <>
        <h2>Grants</h2>
        <Unavailable what="Grants" />
      </>
    );
  }
  const expiry = wallet?.next_expiry ?? null;
  const changed = (o: Outcome) => {
    setOutcome(o);
    grants.reload();
    onChange();
  };
  const voidGrant = async (grant: Grant) => {
    const reason = prompt(
      `Void grant ${grant.grant_id}? Its remaining ${money(grant.remaining)} credits leave the balance. Reason (kept in the ledger and the audit log):`,
    );
    if (reason === null) return;
    if (!reason.trim()) {
      setOutcome({ ok: false, text: 'A reason is needed to void a grant; nothing was voided.' });
      return;
    }
    try {
      const answer = await api<GrantChange>('POST', `/api/wallets/${enc(userId)}/grants/${enc(grant.grant_id)}/void`, {
        reason: reason.trim(),
      });
      changed({
        ok: true,
        text: answer.status === 'already_voided' ? `Grant ${grant.grant_id} was already voided.` : `Grant ${grant.grant_id} voided.`,
      });
    } catch (error) {
      setOutcome({ ok: false, text: `Grant ${grant.grant_id} could not be voided:`, error: asApiError(error) });
    }
  };

  return (
    <>
      <h2>Grants</h2>
      <dl class="figures">
        {wallet && (
          <>
            <div>
              <dt>paid remaining</dt>
              <dd data-figure="grants-paid">
                <Money value={wallet.grants.paid} />
              </dd>
            </div>
            <div>
              <dt>promotional remaining</dt>
              <dd data-figure="grants-promotional">
                <Money value={wallet.grants.promotional} />
              </dd>
            </div>
          </>
        )}
        <div>
          <dt>next expiry</dt>
          <dd data-figure="next-expiry">
            {expiry ? (
              <>
                <Money value={expiry.amount} /> <Time iso={expiry.at} />
              </>
            ) : (
              <span class="muted">nothing expires</span>
            )}
          </dd>
        </div>
      </dl>
      <OutcomeNote outcome={outcome} />
      <GrantForm
        userId={userId}
        onGranted={(answer) =>
          changed({
            ok: true,
            text:
              answer.status === 'already_applied'
                ? `That grant was already applied (${answer.grant.grant_id}).`
                : `Granted ${money(answer.grant.amount)} ${answer.grant.kind} credits${
                    !isZero(answer.debt_paid) ? `; ${money(answer.debt_paid)} paid the debt first` : ''
                  }.`,
          })
        }
      />
      <ErrorNote error={grants.error} />
      <Loading when={grants.loading && !grants.data} />
      {grants.data && grants.data.items.length === 0 && (
        <Empty>No grants: give this wallet credits with the form above (or a top-up), and they show here.</Empty>
      )}
      {grants.data && grants.data.items.length > 0 && (
        <table data-table="grants">
          <thead>
            <tr>
              <th>kind</th>
              <th>origin · description</th>
              <th class="num">priority</th>
              <th class="num">amount</th>
              <th class="num">remaining</th>
              <th>expires</th>
              <th>status</th>
              <th>granted</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {grants.data.items.map((g) => (
              <tr key={g.grant_id} data-grant={g.grant_id}>
                <td>
                  <span class={`badge ${g.kind}`}>{g.kind}</span>
                </td>
                <td data-grant-origin>
                  {ORIGINS[g.origin] ?? g.origin}
                  {g.description && <small class="muted block">{g.description}</small>}
                </td>
                <td class="num">{g.priority}</td>
                <td class="num">
                  <Money value={g.amount} />
                </td>
                <td class="num">
                  <Money value={g.remaining} />
                </td>
                <td class={g.status === 'active' ? '' : 'muted'}>
                  {g.expires_at ? <Time iso={g.expires_at} /> : <span class="muted">never</span>}
                </td>
                <td data-grant-status>
                  <span class={`badge ${g.status}`}>{g.status}</span>
                  {g.void_reason && <small class="muted block">{g.void_reason}</small>}
                </td>
                <td>
                  <Time iso={g.created_at} />
                </td>
                <td class="actions">
                  {g.status === 'active' && (
                    <button type="button" class="danger" onClick={() => void voidGrant(g)}>
                      Void
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

function GrantForm({ userId, onGranted }: { userId: string; onGranted: (answer: GrantChange) => void }) {
  const [idempotencyKey, setIdempotencyKey] = useState(newIdempotencyKey);
  const [error, setError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  return (
    <details class="panel">
      <summary>Grant credits</summary>
      <form
        class="form-grid"
        data-form="grant"
        onSubmit={(event) => {
          event.preventDefault();
          const form = event.currentTarget;
          const data = new FormData(form);
          const expires = String(data.get('expires_at') ?? '').trim();
          const description = String(data.get('description') ?? '').trim();
          const body = {
            amount: String(data.get('amount') ?? '').trim(),
            kind: String(data.get('kind')),
            priority: Number(data.get('priority')),
            expires_at: expires ? new Date(expires).toISOString() : null,
            idempotency_key: idempotencyKey,
            ...(description ? { description } : {}),
          };
          setBusy(true);
          setError(undefined);
          api<GrantChange>('POST', `/api/wallets/${enc(userId)}/grants`, body).then(
            (answer) => {
              setBusy(false);
              form.reset();
              setIdempotencyKey(newIdempotencyKey());
              onGranted(answer);
            },
            (e: unknown) => {
              setBusy(false);
              setError(asApiError(e));
            },
          );
        }}
      >
        <label>
          Amount (credits)
          <input name="amount" required inputMode="decimal" placeholder="100" pattern="\d+(\.\d{1,6})?" />
        </label>
        <label>
          Kind
          <select name="kind">
            <option value="paid">paid</option>
            <option value="promotional">promotional</option>
          </select>
        </label>
        <label>
          Priority (0–100, lower is drawn first)
          <input name="priority" type="number" min={0} max={100} step={1} value="50" required />
        </label>
        <label>
          Expires (your local time, optional)
          <input name="expires_at" type="datetime-local" />
        </label>
        <label>
          Description (optional)
          <input name="description" maxLength={256} placeholder="goodwill after incident 42" />
        </label>
        <p>
          <button type="submit" disabled={busy}>
            Grant
          </button>
        </p>
        <ErrorNote error={error} />
      </form>
    </details>
  );
}
