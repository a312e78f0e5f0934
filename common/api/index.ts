export * from './meta.ts';
export * from './conditions.ts';
export * from './mcs.ts';
export * from './isthmus.ts';
