import { createPipeline, log } from './pipeline.ts';

/**
 * npx tsx bench/consumers/cleanup.ts <id>...: removes what an interrupted
 * benchmark run left behind (slot, publication, schemas, topics, groups,
 * Redis keys); the ids are the bcf_/bcr_ prefixes of that run.
 */
for (const id of process.argv.slice(2)) {
  if (!/^bc[fr]_[a-z0-9]+$/.test(id)) throw new Error(`not a bench id: ${id}`);
  const p = await createPipeline(id, 0);
  await p.cleanup();
  log(`cleaned ${id}`);
}
