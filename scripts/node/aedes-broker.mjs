// aedes-broker.mjs runs aedes (an MQTT 3.1.1-only broker, in memory) on
// 127.0.0.1:PORT for the tests that need a second upstream broker
// implementation next to mosquitto (gateway/bridge_*_test.go).
//
//	node scripts/node/aedes-broker.mjs PORT
//
// It prints "listening PORT" once it accepts connections and runs until it
// gets SIGTERM or SIGINT, or its stdin closes (so it does not outlive a test
// process that was killed).
import net from 'node:net'
import { Aedes } from 'aedes'

const port = Number(process.argv[2])
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node aedes-broker.mjs PORT')
  process.exit(2)
}

const broker = await Aedes.createBroker()
const server = net.createServer(broker.handle)
server.on('error', (err) => {
  console.error(`aedes: ${err.message}`)
  process.exit(1)
})
server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`))

const stop = () => broker.close(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.stdin.on('end', () => process.exit(0))
process.stdin.resume()
