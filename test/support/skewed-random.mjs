// Loaded with `node --import` into one proxy replica by test/srm-redis.test.ts: a fault
// injected from outside the product (no test hook in its code). Math.random() is skewed
// toward 0, so the weighted draw picks low slots too often: with the 50/50 layout
// (slots 0–49 for the first version) about 60% of keyless requests land on the first
// version, a fifth of the second version's share misrouted.
const random = Math.random;
Math.random = () => random() ** 1.357;
