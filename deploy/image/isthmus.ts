// The container image's entry point. `isthmus hub|agent|gateway [--config file] [--set k=v]` runs
// that component in this process, so it is PID 1 and its own SIGTERM/SIGINT handling (graceful
// stop, common/main.ts) is what `docker stop` and the kubelet reach; any other arguments are the
// isthmus CLI's.
const components = {
  hub: () => import('../../hub/main.ts'),
  agent: () => import('../../spoke-agent/main.ts'),
  gateway: () => import('../../east-west-gateway/main.ts'),
};

const word = process.argv[2] ?? '';
if (Object.hasOwn(components, word)) {
  // The component reads its flags from process.argv.slice(2), as when started directly.
  process.argv.splice(2, 1);
  await components[word as keyof typeof components]();
} else {
  await import('../../cli/isthmus.ts');
}
