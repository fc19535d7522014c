import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { LedgerEntry } from './api';
import { money } from './format';

/**
 * The balance over time, drawn from the ledger's balance_after. The plotted numbers are pixels'
 * worth of precision for the eye only; every figure printed (axis, legend) is re-read from the
 * exact strings.
 */
export function BalanceChart({ entries }: { entries: LedgerEntry[] }) {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!host.current || entries.length === 0) return;
    const ordered = [...entries].sort((a, b) => Number(BigInt(a.id) - BigInt(b.id)));
    const xs = ordered.map((e) => new Date(e.created_at).getTime() / 1000);
    const ys = ordered.map((e) => Number(e.balance_after));
    const chart = new uPlot(
      {
        width: host.current.clientWidth || 720,
        height: 220,
        legend: { show: false },
        scales: { x: { time: true } },
        axes: [{}, { size: 90, values: (_u, ticks) => ticks.map((t) => money(String(t))) }],
        series: [
          {},
          { label: 'balance', stroke: '#2f6fde', fill: 'rgba(47,111,222,0.08)', width: 2, paths: uPlot.paths.stepped?.({ align: 1 }) },
        ],
      },
      [xs, ys],
      host.current,
    );
    chart.root.querySelector('canvas')?.setAttribute('data-chart', 'balance');
    return () => chart.destroy();
  }, [entries]);
  if (entries.length === 0) return <p class="empty">No ledger entries yet: the chart appears with the first credit or charge.</p>;
  return <div class="chart" ref={host} aria-label="Balance over time" />;
}
