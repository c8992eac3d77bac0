/** The browser-safe data API: the dataset interface, CIFAR-10, image folders, tensor files, transforms, normalisation. */
export { cifar10Dataset, evaluationIndices, evaluationSubset, batches, isDataset, type Dataset, type Batch, type BatchOptions, type ImageShape } from './dataset.js';
export { CIFAR10_STATS, IMAGENET_STATS, IDENTITY_STATS, NORMALIZATION_PRESETS, parseNormalization, chooseNormalization, forChannels, type Normalization } from './normalization.js';
export { toRgb, toGrey, resizeBilinear, resizeShorterSide, centerCrop, toTensor, transformPixels, defaultResize, type RawImage, type EvalTransform } from './transforms.js';
export { ImageFolderDataset, listImageFolder, isImageFile, IMAGE_EXTENSIONS, type ImageFile, type ImageDecoder, type FolderListing } from './imagefolder.js';
export { parseNpy, parseNpz, unzip, safetensorsArrays, tensorDataset, type NdArray } from './tensors.js';
export { decodeImageInBrowser } from './decode-browser.js';
