// Jest runs in native ESM mode (see README "Tests"): every @nestjs/* 12 package is ESM-only and
// Jest's CommonJS mode cannot load them on node 20.
const transform = {
  '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: '<rootDir>/tsconfig.test.json' }],
};
const common = {
  rootDir: '.',
  extensionsToTreatAsEsm: ['.ts'],
  moduleFileExtensions: ['ts', 'js', 'json'],
  testEnvironment: 'node',
  transform,
};

export default {
  // jest-circus reads the timeout from the global config only: a `testTimeout` inside a project is
  // silently ignored (the e2e tests ran with the 5 s default and failed under load). The chaos
  // suites give every hook and test its own, longer, timeout.
  testTimeout: 60000,
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/src/**/*.spec.ts', '<rootDir>/client/**/*.spec.ts'] },
    {
      ...common,
      displayName: 'e2e',
      testMatch: ['<rootDir>/test/*.e2e-spec.ts'],
    },
    {
      // Slow fault-injection suites (processes killed, connections cut): `npm run test:chaos`.
      ...common,
      displayName: 'chaos',
      // Jest reads testTimeout only at the top level: chaos tests pass their own per-test timeouts.
      testMatch: ['<rootDir>/test/chaos/*.e2e-spec.ts'],
    },
  ],
};
