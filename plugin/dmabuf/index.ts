/** udmabuf wrapping: guest backing ranges (memfd spans) -> one dma-buf per resource. */
export * from './errors.js';
export * from './limits.js';
export * from './ranges.js';
export * from './exporter.js';
