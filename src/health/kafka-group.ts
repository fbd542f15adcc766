import type { Consumer } from 'kafkajs';
import type { HealthState } from './health-state.ts';

/**
 * The `kafka-group` health condition from a kafkajs consumer's events:
 * healthy once it joined its group (with or without partitions: a member
 * with none is a standby), unhealthy before the first join, while
 * rebalancing, after a crash (kafkajs restarts it; the next join heals the
 * condition) and after a stop or disconnect.
 */
export function watchKafkaGroup(consumer: Consumer, group: string, health: HealthState): void {
  health.initCondition('kafka-group', { healthy: false, detail: `not joined group ${group} yet` });
  const e = consumer.events;
  consumer.on(e.GROUP_JOIN, ({ payload }) => {
    const n = Object.values(payload.memberAssignment).reduce((s, ps) => s + ps.length, 0);
    health.setCondition('kafka-group', { healthy: true, detail: `member of ${group}, ${n} partition(s) assigned${payload.isLeader ? ', leader' : ''}` });
  });
  consumer.on(e.REBALANCING, () => health.setCondition('kafka-group', { healthy: false, detail: `group ${group} rebalancing` }));
  consumer.on(e.CRASH, ({ payload }) => health.setCondition('kafka-group', {
    healthy: false, detail: `consumer crashed: ${payload.error?.message ?? 'unknown error'}${payload.restart ? '; restarting' : '; not restarting'}`,
  }));
  // Only our own shutdown stops or disconnects it (a crash comes as CRASH): not worth a warning.
  consumer.on(e.STOP, () => health.initCondition('kafka-group', { healthy: false, detail: 'consumer stopped' }));
  consumer.on(e.DISCONNECT, () => health.initCondition('kafka-group', { healthy: false, detail: 'consumer disconnected' }));
}
