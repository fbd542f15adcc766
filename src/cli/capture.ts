import { runMain } from '../lifecycle/run-main.ts';
import { CaptureService } from '../source/capture.ts';
import { loadCaptureConfig } from '../source/capture-config.ts';

/**
 * Capture process: Postgres slot -> Kafka (Avro, Debezium envelope).
 * Configuration from the environment (see docs/capture.md). A fatal error
 * exits non-zero without confirming the slot further; a restart resumes.
 */
await runMain('capture', (log) => {
  const cfg = loadCaptureConfig();
  const svc = new CaptureService(cfg, log, (err) => {
    log.fatal({ err }, 'exiting after fatal capture error');
    process.exitCode = 1;
    setTimeout(() => process.exit(1), 100).unref();
  });
  return [svc];
});
