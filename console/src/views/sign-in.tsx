import { useState } from 'preact/hooks';
import { ApiError, signIn } from '../api';
import { asApiError, ErrorNote } from '../ui';

/** One password input, submitted with Enter; the key is checked before it is kept. */
export function SignIn({ onSignedIn }: { onSignedIn: () => void }) {
  const [error, setError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  return (
    <form
      class="sign-in"
      onSubmit={(event) => {
        event.preventDefault();
        const key = (new FormData(event.currentTarget).get('key') as string).trim();
        setBusy(true);
        signIn(key).then(onSignedIn, (e: unknown) => {
          setError(asApiError(e));
          setBusy(false);
        });
      }}
    >
      <h1>Credits console</h1>
      <label>
        Admin API key
        <input name="key" type="password" autocomplete="off" required autofocus />
      </label>
      <button type="submit" disabled={busy}>
        Sign in
      </button>
      <p class="muted">The key stays in this browser tab (session storage) and is sent only to this service.</p>
      <ErrorNote error={error} />
    </form>
  );
}
