// An OCPP 2.0.1 charger on the `ocpp-rpc` package in strict mode: every Call it sends and
// every answer it gets (and gives) is checked against the OCA 2.0.1 schemas; a failure is
// printed as `invalid ...` and fails the test that reads this output.
//
// usage: node charger201.mjs <ws url without the id> <charge point id> <idToken>
// It boots, reports its EVSE Available, authorizes the idToken, and then does what the
// gateway asks: RequestStartTransaction -> TransactionEvent Started (remoteStartId),
// RequestStopTransaction -> Ended. Each step is printed as one JSON line; it exits when its
// stdin closes.
import { RPCClient } from 'ocpp-rpc';

const [url, identity, token] = process.argv.slice(2);
const say = (event, data = {}) => console.log(JSON.stringify({ event, ...data }));
const now = () => new Date().toISOString();
let seqNo = 0;
let wh = 1000;
const running = new Map(); // transactionId -> evseId

const cli = new RPCClient({ endpoint: url, identity, protocols: ['ocpp2.0.1'], strictMode: true, reconnect: false });
cli.on('strictValidationFailure', (f) => say('invalid', { message: String(f.error && f.error.message), method: f.method, outbound: f.outbound, isCall: f.isCall }));

const meter = (value) => [{ timestamp: now(), sampledValue: [{ value, measurand: 'Energy.Active.Import.Register', unitOfMeasure: { unit: 'Wh' } }] }];

cli.handle('RequestStartTransaction', ({ params }) => {
  const transactionId = `RPC-${params.remoteStartId}`;
  const evseId = params.evseId ?? 1;
  running.set(transactionId, evseId);
  setTimeout(async () => {
    await cli.call('TransactionEvent', {
      eventType: 'Started', timestamp: now(), triggerReason: 'RemoteStart', seqNo: seqNo++,
      transactionInfo: { transactionId, remoteStartId: params.remoteStartId },
      evse: { id: evseId, connectorId: 1 }, idToken: params.idToken, meterValue: meter(wh),
    });
    say('started', { transactionId });
  }, 50);
  return { status: 'Accepted', transactionId };
});

cli.handle('RequestStopTransaction', ({ params }) => {
  const evseId = running.get(params.transactionId);
  if (evseId === undefined) return { status: 'Rejected' };
  running.delete(params.transactionId);
  setTimeout(async () => {
    wh += 500; // within what the review lets a 3.7 kW connector deliver at once
    await cli.call('TransactionEvent', {
      eventType: 'Ended', timestamp: now(), triggerReason: 'RemoteStop', seqNo: seqNo++,
      transactionInfo: { transactionId: params.transactionId, stoppedReason: 'Remote' },
      evse: { id: evseId, connectorId: 1 }, meterValue: meter(wh),
    });
    say('ended', { transactionId: params.transactionId });
  }, 50);
  return { status: 'Accepted' };
});

cli.handle('GetVariables', ({ params }) => ({
  getVariableResult: params.getVariableData.map((d) => ({ attributeStatus: 'UnknownVariable', component: d.component, variable: d.variable })),
}));
cli.handle('SendLocalList', () => ({ status: 'Accepted' }));
cli.handle('GetLocalListVersion', () => ({ versionNumber: 0 }));
cli.handle('TriggerMessage', () => ({ status: 'Accepted' }));
cli.handle('GetTransactionStatus', () => ({ messagesInQueue: false }));
cli.handle(({ method }) => { say('unhandled', { method }); return { status: 'Rejected' }; });

try {
  await cli.connect();
  say('connected', { protocol: cli.protocol });
  const boot = await cli.call('BootNotification', { reason: 'PowerUp', chargingStation: { vendorName: 'ocpp-rpc', model: 'strict' } });
  say('boot', { status: boot.status });
  await cli.call('StatusNotification', { timestamp: now(), connectorStatus: 'Available', evseId: 1, connectorId: 1 });
  const auth = await cli.call('Authorize', { idToken: { idToken: token, type: 'ISO14443' } });
  say('authorized', { status: auth.idTokenInfo.status });
  await cli.call('Heartbeat', {});
  say('ready');
} catch (err) {
  say('error', { message: String(err && err.message) });
}
process.stdin.resume();
process.stdin.on('end', async () => { await cli.close({ code: 1000 }); process.exit(0); });
