// The IIFE bundle's entry: window.lastmile for pages without a bundler.
import * as lastmile from './index';
(globalThis as unknown as { lastmile: typeof lastmile }).lastmile = lastmile;
