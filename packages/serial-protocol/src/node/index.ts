// Node-only: the pure framing is '@mqtt-edge/serial-protocol'; this subpath opens real ports.
export {
  createSerialPort,
  EofAwareLinuxBinding,
  EofAwarePortBinding,
  openSerialPort,
  SerialEofError,
  type SerialPortOptions,
} from './serial-port.ts';
