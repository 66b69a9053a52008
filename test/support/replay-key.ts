/**
 * The payload key the saved histories in test/fixtures/histories were recorded with. A test-only
 * key: it protects nothing but those fixtures, and replay needs it to decode their payloads.
 */
export const REPLAY_FIXTURE_KEYS = 'replay-fixtures:9yT0m2M1b0Qy8e3f1cZl2Q7pG4sVx6kNwHdR5uJ8aEo=';
