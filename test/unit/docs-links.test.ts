import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The docs stand alone: every link in README.md and docs/*.md points at a
 * file inside the repository (and, with a #fragment, at a heading that
 * exists there), never outside it and never at the network.
 */
const ROOT = resolve(import.meta.dirname, '..', '..');
const files = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const m = !fenced && /^#{1,6}\s+(.*)$/.exec(line);
    if (!m) continue;
    const slug = m[1]!.trim().toLowerCase().replace(/[^\p{L}\p{N}_\- ]/gu, '').replace(/ /g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return out;
}

function links(markdown: string): string[] {
  const text = markdown.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  return [...text.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1]!);
}

describe('documentation links', () => {
  it('finds the docs', () => {
    expect(files).toContain('docs/contract.md');
    expect(files.length).toBeGreaterThan(5);
  });

  it.each(files)('%s links only inside the repository, to files and headings that exist', (file) => {
    const md = readFileSync(join(ROOT, file), 'utf8');
    const broken: string[] = [];
    for (const link of links(md)) {
      if (/^[a-z]+:/i.test(link)) {
        broken.push(`${link}: leaves the repository`);
        continue;
      }
      const [path, fragment] = link.split('#') as [string, string | undefined];
      const target = path === '' ? join(ROOT, file) : resolve(dirname(join(ROOT, file)), path);
      if (relative(ROOT, target).startsWith('..')) broken.push(`${link}: outside the repository`);
      else if (!existsSync(target)) broken.push(`${link}: no such file`);
      else if (fragment && target.endsWith('.md') && !anchors(readFileSync(target, 'utf8')).has(fragment)) broken.push(`${link}: no such heading`);
    }
    expect(broken).toEqual([]);
  });

  it('the contract has the sections the code and docs link to', () => {
    const a = anchors(readFileSync(join(ROOT, 'docs/contract.md'), 'utf8'));
    for (const s of ['1-source', '2-change-events', '3-target-tables', '4-guarantees', 'mart_sales', 'clickstream-models', 'dim_customers']) expect(a).toContain(s);
  });
});
