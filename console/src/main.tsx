import { render } from 'preact';
import { useState } from 'preact/hooks';
import { LocationProvider, Route, Router, useLocation } from 'preact-iso';
import { signOut, storedKey } from './api';
import { AuditLogView } from './views/audit-log';
import { EventsView } from './views/events';
import { FailuresView } from './views/failures';
import { KeysView } from './views/keys';
import { PricingView } from './views/pricing';
import { ReconciliationView } from './views/reconciliation';
import { SignIn } from './views/sign-in';
import { WalletView } from './views/wallet';
import { WalletsView } from './views/wallets';
import { WebhooksView, WebhookView } from './views/webhooks';
import './style.css';

const NAV: [string, string][] = [
  ['/console/wallets', 'Wallets'],
  ['/console/failures', 'Settlement failures'],
  ['/console/reconciliation', 'Reconciliation'],
  ['/console/pricing', 'Prices & features'],
  ['/console/keys', 'API keys'],
  ['/console/webhooks', 'Webhooks'],
  ['/console/events', 'Events'],
  ['/console/audit-log', 'Audit log'],
];

function Shell({ onSignOut }: { onSignOut: () => void }) {
  const { path } = useLocation();
  return (
    <>
      <header>
        <a class="brand" href="/console/wallets">
          Credits console
        </a>
        <nav>
          {NAV.map(([href, label]) => (
            <a href={href} class={path.startsWith(href) ? 'active' : ''}>
              {label}
            </a>
          ))}
        </nav>
        <button type="button" class="link" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <main>
        <Router>
          <Route path="/console/wallets" component={WalletsView} />
          <Route path="/console/wallets/:userId" component={WalletView} />
          <Route path="/console/failures" component={FailuresView} />
          <Route path="/console/reconciliation" component={ReconciliationView} />
          <Route path="/console/pricing" component={PricingView} />
          <Route path="/console/keys" component={KeysView} />
          <Route path="/console/webhooks" component={WebhooksView} />
          <Route path="/console/webhooks/:webhookId" component={WebhookView} />
          <Route path="/console/events" component={EventsView} />
          <Route path="/console/audit-log" component={AuditLogView} />
          <Route default component={WalletsView} />
        </Router>
      </main>
    </>
  );
}

function App() {
  const [signedIn, setSignedIn] = useState(storedKey() !== null);
  return (
    <LocationProvider>
      {signedIn ? (
        <Shell
          onSignOut={() => {
            signOut();
            setSignedIn(false);
          }}
        />
      ) : (
        <SignIn onSignedIn={() => setSignedIn(true)} />
      )}
    </LocationProvider>
  );
}

render(<App />, document.getElementById('app')!);
