import { describe, expect, it } from '@jest/globals';
import { isPrivateAddress, privateNetworkReason } from './network-guard';

describe('webhook network guard', () => {
  it.each([
    '127.0.0.1',
    '10.1.2.3',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '::1',
    '::',
    'fe80::1',
    'fd00::1',
    'fc00::abcd',
    '::ffff:127.0.0.1',
    '::ffff:10.0.0.1',
  ])('refuses %s', (address) => expect(isPrivateAddress(address)).toBe(true));

  it.each(['8.8.8.8', '1.1.1.1', '172.32.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8'])('allows %s', (address) =>
    expect(isPrivateAddress(address)).toBe(false),
  );

  it('judges a URL by every address its host resolves to', async () => {
    expect(await privateNetworkReason('http://localhost:8080/hook')).toMatch(/loopback, private or link-local/);
    expect(await privateNetworkReason('http://[::1]/hook')).toMatch(/::1/);
    expect(await privateNetworkReason('https://93.184.215.14/hook')).toBeUndefined();
  });
});
