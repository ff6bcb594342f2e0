import { describe, expect, it } from 'vitest';
import type { SerialPortConfig } from '../src/config.ts';
import { findUsbPort, type ListedPort, matchUsbPorts, resolvePortPath } from '../src/serial-link.ts';

// Shaped like SerialPort.list() on Linux (bindings-cpp's PortInfo from udev), with a pty that
// udev reports without USB ids.
const LIST: ListedPort[] = [
  {
    path: '/dev/ttyUSB0',
    manufacturer: 'FTDI',
    serialNumber: 'A50285BI',
    pnpId: 'usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0',
    vendorId: '0403',
    productId: '6001',
  },
  {
    path: '/dev/ttyUSB1',
    manufacturer: 'FTDI',
    serialNumber: 'B7731XQ2',
    pnpId: 'usb-FTDI_FT232R_USB_UART_B7731XQ2-if00-port0',
    vendorId: '0403',
    productId: '6001',
  },
  {
    path: '/dev/ttyACM0',
    manufacturer: 'Arduino (www.arduino.cc)',
    serialNumber: '85736323838351F0E1A1',
    pnpId: 'usb-Arduino__www.arduino.cc__0043_85736323838351F0E1A1-if00',
    vendorId: '2341',
    productId: '0043',
  },
  { path: '/dev/ttyS0' },
];

const list = async () => LIST;
const port = (p: Partial<SerialPortConfig>): SerialPortConfig =>
  ({ name: 'p', baud: 115200, framing: 'binary', ...p }) as SerialPortConfig;

describe('USB matching', () => {
  it('matches vendor and product, normalising 0x prefixes, case and leading zeros', () => {
    expect(matchUsbPorts(LIST, { vendorId: '2341', productId: '0043' }).map((p) => p.path)).toEqual([
      '/dev/ttyACM0',
    ]);
    expect(matchUsbPorts(LIST, { vendorId: '2341', productId: '43' }).map((p) => p.path)).toEqual([
      '/dev/ttyACM0',
    ]);
    const odd: ListedPort[] = [{ path: '/dev/ttyUSB9', vendorId: '0x403', productId: '0x6001' }];
    expect(matchUsbPorts(odd, { vendorId: '0403', productId: '6001' })).toHaveLength(1);
    expect(
      matchUsbPorts([{ path: '/dev/x', vendorId: '10C4', productId: 'EA60' }], { vendorId: '10c4' }),
    ).toHaveLength(1);
  });

  it('never matches a port without USB ids (ttyS, ptys)', () => {
    expect(matchUsbPorts(LIST, { vendorId: '0000' })).toEqual([]);
    expect(matchUsbPorts([{ path: '/dev/pts/3' }], { vendorId: '0403' })).toEqual([]);
  });

  it('tells two identical adapters apart by serial number', async () => {
    expect(
      await resolvePortPath(
        port({ usb: { vendorId: '0403', productId: '6001', serialNumber: 'B7731XQ2' } }),
        list,
      ),
    ).toBe('/dev/ttyUSB1');
    expect(await findUsbPort({ serialNumber: 'A50285BI' }, list)).toBe('/dev/ttyUSB0');
  });

  it('no match is an error naming the ids', async () => {
    await expect(
      resolvePortPath(port({ usb: { vendorId: '1a86', productId: '7523' } }), list),
    ).rejects.toThrow(/no USB serial device matches .*1a86/);
    await expect(resolvePortPath(port({ usb: { vendorId: '0403' } }), async () => [])).rejects.toThrow(
      /no USB/,
    );
    expect(await findUsbPort({ vendorId: '1a86' }, list)).toBeUndefined();
  });

  it('several matches is an error listing them, not the first by enumeration order', async () => {
    const p = resolvePortPath(port({ usb: { vendorId: '0403', productId: '6001' } }), list);
    await expect(p).rejects.toThrow(/2 USB serial devices match/);
    await expect(p).rejects.toThrow(/\/dev\/ttyUSB0 \(serial A50285BI\), \/dev\/ttyUSB1 \(serial B7731XQ2\)/);
    await expect(p).rejects.toThrow(/serialNumber or give a \/dev\/serial\/by-id path/);
    expect(await findUsbPort({ vendorId: '0403' }, list)).toBeUndefined();
  });

  it('a /dev/serial/by-id path is opened as given, without listing', async () => {
    const byId = '/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0';
    let listed = 0;
    const counting = async () => {
      listed++;
      return LIST;
    };
    expect(await resolvePortPath(port({ path: byId }), counting)).toBe(byId);
    expect(listed).toBe(0);
  });

  it('a lister that fails (no udevadm) rejects with its error', async () => {
    const broken = async (): Promise<ListedPort[]> => {
      throw new Error('spawn udevadm ENOENT');
    };
    await expect(resolvePortPath(port({ usb: { vendorId: '0403' } }), broken)).rejects.toThrow(
      /udevadm ENOENT/,
    );
  });
});
