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
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/src/**/*.spec.ts', '<rootDir>/client/**/*.spec.ts'] },
    {
      ...common,
      displayName: 'e2e',
      testMatch: ['<rootDir>/test/*.e2e-spec.ts'],
      testTimeout: 60000,
    },
    {
      // Slow fault-injection suites (processes killed, connections cut): `npm run test:chaos`.
      ...common,
      displayName: 'chaos',
      testMatch: ['<rootDir>/test/chaos/*.e2e-spec.ts'],
      testTimeout: 300000,
    },
  ],
};
