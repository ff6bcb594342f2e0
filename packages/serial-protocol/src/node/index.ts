// Node-only: the pure framing is '@mqtt-edge/serial-protocol'; this subpath opens real ports.
export {
  createSerialPort,
  DEFAULT_WRITE_TIMEOUT_MS,
  EofAwareLinuxBinding,
  type EofAwareOpenOptions,
  EofAwarePortBinding,
  openSerialPort,
  PollInterest,
  SerialEofError,
  type SerialPortOptions,
  SerialWriteTimeoutError,
} from './serial-port.ts';
