// A token bucket for the stanzas a component sends: `perSecond` tokens, refilled evenly over one
// second. The session asks how long to wait before the next stanza and pauses reading meanwhile.
export class StanzaRate {
  private tokens: number;
  private at: number;

  /** `perSecond` 0 means no limit. */
  constructor(private readonly perSecond: number, private readonly now: () => number = Date.now) {
    this.tokens = perSecond;
    this.at = now();
  }

  /** Takes a token and returns 0, or returns the milliseconds until one is available. */
  take(): number {
    if (this.perSecond === 0) return 0;
    const now = this.now();
    this.tokens = Math.min(this.perSecond, this.tokens + ((now - this.at) * this.perSecond) / 1000);
    this.at = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) * 1000) / this.perSecond);
  }
}
