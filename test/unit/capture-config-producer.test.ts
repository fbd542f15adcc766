import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.ts';
import { loadCaptureConfig } from '../../src/source/capture-config.ts';

describe('CAPTURE_PRODUCER / CAPTURE_LINGER_MS', () => {
  it('defaults to kafkajs and names a bad value', () => {
    expect(loadCaptureConfig({}).publisher.producer).toBe('kafkajs');
    expect(loadCaptureConfig({}).publisher.lingerMs).toBe(2);
    expect(loadCaptureConfig({ CAPTURE_LINGER_MS: '0' }).publisher.lingerMs).toBe(0);
    expect(() => loadCaptureConfig({ CAPTURE_PRODUCER: 'librdkafka' })).toThrow(/^CAPTURE_PRODUCER /);
    expect(() => loadCaptureConfig({ CAPTURE_LINGER_MS: '-1' })).toThrow(/^CAPTURE_LINGER_MS /);
  });

  it('rdkafka refuses TLS/SASL brokers rather than connecting without them', () => {
    const env = { CAPTURE_PRODUCER: 'rdkafka', KAFKA_SECURITY_PROTOCOL: 'SASL_PLAINTEXT', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'p' };
    expect(() => loadCaptureConfig(env)).toThrow(/^CAPTURE_PRODUCER=rdkafka supports PLAINTEXT brokers only, but KAFKA_SECURITY_PROTOCOL is SASL_PLAINTEXT/);
    expect(loadCaptureConfig({ ...env, CAPTURE_PRODUCER: 'kafkajs' }).publisher.producer).toBe('kafkajs');
  });

  it('rdkafka either loads node-rdkafka at start-up or stops with a ConfigError naming the setting', () => {
    let cfg: ReturnType<typeof loadCaptureConfig> | null = null;
    let err: unknown = null;
    try {
      cfg = loadCaptureConfig({ CAPTURE_PRODUCER: 'rdkafka' });
    } catch (e) {
      err = e;
    }
    if (cfg) expect(cfg.publisher.producer).toBe('rdkafka');
    else {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(/^CAPTURE_PRODUCER=rdkafka needs the node-rdkafka package/);
    }
  });
});
