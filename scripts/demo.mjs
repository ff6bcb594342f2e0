// Placeholder until the embedded demo (firmware-sim -> agent -> broker-lite) lands with the agent issue.
console.log('mqtt-edge: the embedded demo arrives with packages/agent; run `npm test` meanwhile.');
