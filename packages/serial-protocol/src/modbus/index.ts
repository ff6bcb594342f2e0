export { crc16Matches, crc16modbus } from './crc16.ts';
export * from './master.ts';
export * from './rtu.ts';
export * from './values.ts';
