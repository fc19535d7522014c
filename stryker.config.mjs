// StrykerJS on the pure money modules: `npm run test:mutation` (slow, not part of `npm test`).
import jestConfig from './jest.config.mjs';

const unit = jestConfig.projects.find((p) => p.displayName === 'unit');

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  mutate: ['src/common/money.ts', 'src/common/decimal.ts', 'src/pricing/pricing-engine.ts', 'src/common/coalescer.ts'],
  testRunner: 'jest',
  jest: {
    projectType: 'custom',
    // The unit project as a top-level config: Stryker puts its coverage-collecting test environment at
    // the top level, and a project's own `testEnvironment` would silently override it.
    // Only the four modules' own specs: the rest of the unit suite (Nest modules, logging, validation)
    // imports money too and would be rerun for every static mutant, for hours, without testing them.
    config: {
      ...unit,
      projects: undefined,
      // A mutant that leaves a promise pending fails its test here rather than at Stryker's timeout,
      // which would kill and restart the whole test-runner process.
      testTimeout: 5000,
      testMatch: ['<rootDir>/src/common/{money,decimal,coalescer}*.spec.ts', '<rootDir>/src/pricing/pricing-engine*.spec.ts'],
    },
    enableFindRelatedTests: true,
  },
  // Jest runs in native ESM mode (see jest.config.mjs): every test-runner process needs the flag.
  testRunnerNodeArgs: ['--experimental-vm-modules'],
  // No typescript checker: it takes one of the two processes for the whole run, and ts-jest runs
  // with isolatedModules (no type check), so a mistyped mutant is still judged by the tests.
  coverageAnalysis: 'perTest',
  // Two cores shared with other work.
  concurrency: 2,
  timeoutMS: 10000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/index.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  tempDirName: '.stryker-tmp',
  ignorePatterns: ['dist', 'data', 'coverage', 'bench/.work'],
  cleanTempDir: true,
};
