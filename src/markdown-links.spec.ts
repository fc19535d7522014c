import { describe, expect, it } from '@jest/globals';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

/**
 * Someone who clones the repository must be able to follow every link of its documentation:
 * a link to a file outside the repository (the contract once lived at ../shared/API.md), to a
 * file that does not exist, or to a heading that does not exist fails here. Web addresses are
 * not checked (no network in unit tests).
 */
const ROOT = resolve(process.cwd());
const SKIPPED_DIRS = new Set(['node_modules', 'dist', 'data', 'coverage', 'reports', '.git', '.work']);

function markdownFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return SKIPPED_DIRS.has(entry.name) ? [] : markdownFiles(path);
    return entry.name.endsWith('.md') ? [path] : [];
  });
}

/** Text outside fenced code blocks. */
const withoutFences = (text: string) => text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '');

/** Text outside code: a link shown as code (`[a](b)` in backticks, or a fenced block) is not a link. */
const prose = (text: string) => withoutFences(text).replace(/`[^`\n]*`/g, '');

/** Inline links `[text](target "title")`, images included, and reference definitions `[id]: target`. */
function linkTargets(text: string): string[] {
  const body = prose(text);
  const inline = [...body.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]);
  const references = [...body.matchAll(/^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm)].map((m) => m[1]);
  return [...inline, ...references];
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const [, heading] of withoutFences(text).matchAll(/^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$/gm)) {
    const base = heading
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    result.add(n === 0 ? base : `${base}-${n}`);
  }
  return result;
}

/** What is wrong with one link of `file`, or undefined when it leads somewhere real inside the repository. */
function problem(file: string, target: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return undefined; // https:, mailto: …: not a file
  const [pathPart, fragment] = target.split('#', 2) as [string, string | undefined];
  const decoded = decodeURIComponent(pathPart);
  const path = decoded === '' ? file : decoded.startsWith('/') ? join(ROOT, decoded) : resolve(dirname(file), decoded);
  const inside = relative(ROOT, path);
  if (inside.startsWith(`..${sep}`) || inside === '..') return 'leaves the repository';
  if (!existsSync(path)) return 'points to a missing file';
  if (fragment && statSync(path).isFile() && path.endsWith('.md') && !anchors(readFileSync(path, 'utf8')).has(fragment)) {
    return `names a heading (#${fragment}) that ${relative(ROOT, path)} does not have`;
  }
  return undefined;
}

describe('links in the repository’s markdown', () => {
  const files = markdownFiles(ROOT);

  it('finds the documentation it is meant to check', () => {
    const names = files.map((f) => relative(ROOT, f).split(sep).join('/'));
    expect(names).toEqual(expect.arrayContaining(['README.md', 'docs/api.md', 'docs/demo.md', 'bench/README.md', 'client/README.md']));
  });

  it('every link points to a file (and heading) inside the repository', () => {
    const broken = files.flatMap((file) =>
      linkTargets(readFileSync(file, 'utf8')).flatMap((target) => {
        const why = problem(file, target);
        return why ? [`${relative(ROOT, file)}: (${target}) ${why}`] : [];
      }),
    );
    expect(broken).toEqual([]);
  });

  it('catches the kinds of link it is there to catch', () => {
    const readme = join(ROOT, 'README.md');
    expect(problem(readme, '../shared/API.md')).toBe('leaves the repository');
    expect(problem(readme, 'docs/no-such-page.md')).toBe('points to a missing file');
    expect(problem(readme, '#no-such-heading')).toMatch(/does not have/);
    expect(problem(readme, 'docs/api.md')).toBeUndefined();
    expect(problem(readme, 'https://example.com/x')).toBeUndefined();
    expect(linkTargets('see [a](b.md) and `[c](d.md)`\n```\n[e](f.md)\n```\n[g]: h.md')).toEqual(['b.md', 'h.md']);
    expect(anchors('## Queue settlement (RabbitMQ)\n## Operating it: logs, metrics, docs\n## Tests\n## Tests')).toEqual(
      new Set(['queue-settlement-rabbitmq', 'operating-it-logs-metrics-docs', 'tests', 'tests-1']),
    );
  });
});
