/**
 * Joins ICEBURG `quality_metrics.jsonl` scores onto records by conversation id. Precedence, from
 * strongest:
 * 1. the last metrics line for that id that has a `quality_score` (a later rating replaces an
 *    earlier one, as a re-rating in the log would);
 * 2. the record's own score (`metadata.quality_score`, or a top-level `quality_score`);
 * 3. unscored.
 * A metrics line without `quality_score` (only `user_rating`, say) changes nothing: it must not
 * erase the score the conversation was logged with. Metrics files are read before other inputs
 * (inputs.ts), so every record sees every metrics line.
 */
import type { DataRecord, QualityUpdate } from './record.js';

export interface QualityJoinCounts {
  metricsRead: number;
  /** Metrics lines without a quality_score (they leave records as they are). */
  metricsWithoutScore: number;
  /** Conversation ids whose metrics score was applied to at least one record. */
  metricsJoined: number;
  /** Conversation ids in the metrics that no record carries. */
  metricsUnmatched: number;
}

export class QualityJoin {
  /** Score by conversation id; null when its metrics lines had none. */
  private readonly byId = new Map<string, number | null>();
  private readonly matched = new Set<string>();
  private read = 0;
  private withoutScore = 0;

  add(update: QualityUpdate): void {
    this.read++;
    if (update.quality === null) {
      this.withoutScore++;
      if (!this.byId.has(update.conversationId)) this.byId.set(update.conversationId, null);
    } else {
      this.byId.set(update.conversationId, update.quality);
    }
  }

  /** Sets the record's quality from the metrics when they score it; returns true if they did. */
  apply(record: DataRecord): boolean {
    const id = record.conversationId;
    if (id === undefined || !this.byId.has(id)) return false;
    this.matched.add(id);
    const score = this.byId.get(id) ?? null;
    if (score === null) return false;
    record.quality = score;
    return true;
  }

  counts(): QualityJoinCounts {
    let joined = 0;
    let unmatched = 0;
    for (const [id, score] of this.byId) {
      if (!this.matched.has(id)) unmatched++;
      else if (score !== null) joined++;
    }
    return { metricsRead: this.read, metricsWithoutScore: this.withoutScore, metricsJoined: joined, metricsUnmatched: unmatched };
  }
}
