// The name the CLI and the benchmark know the native carrier's availability by.
export { nativeCarrierAvailability as nativeRelayAvailability } from './native-carrier.js';
